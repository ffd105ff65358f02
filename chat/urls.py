from django.urls import path
from django.views.generic import RedirectView

from . import branch_views, compare_views, views, views_models

MESSAGE = "c/<uuid:public_id>/messages/<uuid:message_id>/"
RUN = "c/<uuid:public_id>/compare/<uuid:run_id>/"

urlpatterns = [
    path(
        "",
        RedirectView.as_view(pattern_name="conversation_list", http_method_names=["get", "head"]),
        name="home",
    ),
    path("accounts/signup/", views.signup, name="signup"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("conversations/new/", views.conversation_create, name="conversation_create"),
    path("conversations/export.json", views.conversations_export, name="conversations_export"),
    path("conversations/import/", views.conversations_import, name="conversations_import"),
    path("c/<uuid:public_id>/", views.conversation_detail, name="conversation_detail"),
    path("c/<uuid:public_id>/send/", views.message_send, name="message_send"),
    path("c/<uuid:public_id>/stream/", views.message_stream, name="message_stream"),
    path("c/<uuid:public_id>/parameters/", views.parameters_save, name="parameters_save"),
    path(
        "c/<uuid:public_id>/parameters/panel/",
        views.parameters_panel,
        name="parameters_panel",
    ),
    path("c/<uuid:public_id>/rename/", views.conversation_rename, name="conversation_rename"),
    path("c/<uuid:public_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path(
        "c/<uuid:public_id>/export.json",
        views.conversation_export,
        {"fmt": "json"},
        name="conversation_export_json",
    ),
    path(
        "c/<uuid:public_id>/export.md",
        views.conversation_export,
        {"fmt": "md"},
        name="conversation_export_md",
    ),
    path("c/<uuid:public_id>/share/", views.share_create, name="share_create"),
    path(
        "c/<uuid:public_id>/messages/<uuid:message_id>/",
        views.message_fragment,
        name="message_fragment",
    ),
    path(
        "c/<uuid:public_id>/messages/<uuid:message_id>/retry/",
        views.reply_retry,
        name="reply_retry",
    ),
    path(
        "c/<uuid:public_id>/messages/<uuid:message_id>/stop/",
        views.reply_stop,
        name="reply_stop",
    ),
    path(f"{MESSAGE}regenerate/", branch_views.reply_regenerate, name="reply_regenerate"),
    path(
        f"{MESSAGE}regenerate/stream/",
        branch_views.reply_regenerate_stream,
        name="reply_regenerate_stream",
    ),
    path(f"{MESSAGE}edit/", branch_views.message_edit, name="message_edit"),
    path(f"{MESSAGE}edit/stream/", branch_views.message_edit_stream, name="message_edit_stream"),
    path(f"{MESSAGE}show/", branch_views.branch_switch, name="branch_switch"),
    path(f"{MESSAGE}tool-results/", branch_views.tool_results_send, name="tool_results_send"),
    path(
        f"{MESSAGE}tool-results/stream/",
        branch_views.tool_results_stream,
        name="tool_results_stream",
    ),
    path(f"{MESSAGE}delete/", branch_views.branch_delete, name="branch_delete"),
    path("c/<uuid:public_id>/compare/", compare_views.compare_new, name="compare_new"),
    path("c/<uuid:public_id>/compare/start/", compare_views.compare_start, name="compare_start"),
    path(RUN, compare_views.compare_detail, name="compare_detail"),
    path(RUN + "share/", views.compare_share, name="compare_share"),
    path(
        f"{RUN}columns/<int:position>/stream/",
        compare_views.compare_column_stream,
        name="compare_column_stream",
    ),
    path(
        f"{RUN}choose/<uuid:message_id>/",
        compare_views.compare_choose,
        name="compare_choose",
    ),
    path("files/<uuid:attachment_id>/", views.attachment_file, name="attachment_file"),
    path("calls/<uuid:call_id>/", views.call_detail, name="call_detail"),
    path("calls/<uuid:call_id>/record/", views.call_record, name="call_record"),
    path("usage/", views_models.usage_page, name="usage"),
    path("presets/", views_models.preset_list, name="preset_list"),
    path("c/<uuid:public_id>/presets/save/", views_models.preset_save, name="preset_save"),
    path("presets/<uuid:preset_id>/start/", views_models.preset_start, name="preset_start"),
    path("presets/<uuid:preset_id>/delete/", views_models.preset_delete, name="preset_delete"),
    path(
        "calls/<uuid:call_id>/<str:part>.json",
        views.call_download,
        name="call_download",
    ),
    path("shares/", views.share_list, name="share_list"),
    path("shares/<uuid:public_id>/update/", views.share_update, name="share_update"),
    path("shares/<uuid:public_id>/settings/", views.share_settings, name="share_settings"),
    path("shares/<uuid:public_id>/revoke/", views.share_revoke, name="share_revoke"),
    path("s/<str:token>/", views.shared_conversation, name="shared_conversation"),
    path("s/<str:token>/continue/", views.share_continue, name="share_continue"),
    path("s/<str:token>/files/<str:sha256>/", views.shared_file, name="shared_file"),
]
