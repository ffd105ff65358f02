from django.urls import path
from django.views.generic import RedirectView

from .views import accounts, branches, calls, catalogue, chat, compare, shares, transfer

MESSAGE = "c/<uuid:public_id>/messages/<uuid:message_id>/"
RUN = "c/<uuid:public_id>/compare/<uuid:run_id>/"

urlpatterns = [
    path(
        "",
        RedirectView.as_view(pattern_name="conversation_list", http_method_names=["get", "head"]),
        name="home",
    ),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("conversations/", chat.conversation_list, name="conversation_list"),
    path("conversations/new/", chat.conversation_create, name="conversation_create"),
    path("conversations/export.json", transfer.conversations_export, name="conversations_export"),
    path("conversations/import/", transfer.conversations_import, name="conversations_import"),
    path("c/<uuid:public_id>/", chat.conversation_detail, name="conversation_detail"),
    path("c/<uuid:public_id>/send/", chat.message_send, name="message_send"),
    path("c/<uuid:public_id>/stream/", chat.message_stream, name="message_stream"),
    path("c/<uuid:public_id>/parameters/", chat.parameters_save, name="parameters_save"),
    path(
        "c/<uuid:public_id>/parameters/panel/",
        chat.parameters_panel,
        name="parameters_panel",
    ),
    path("c/<uuid:public_id>/rename/", chat.conversation_rename, name="conversation_rename"),
    path("c/<uuid:public_id>/delete/", chat.conversation_delete, name="conversation_delete"),
    path(
        "c/<uuid:public_id>/export.json",
        transfer.conversation_export,
        {"fmt": "json"},
        name="conversation_export_json",
    ),
    path(
        "c/<uuid:public_id>/export.md",
        transfer.conversation_export,
        {"fmt": "md"},
        name="conversation_export_md",
    ),
    path("c/<uuid:public_id>/share/", shares.share_create, name="share_create"),
    path(
        "c/<uuid:public_id>/messages/<uuid:message_id>/",
        chat.message_fragment,
        name="message_fragment",
    ),
    path(
        "c/<uuid:public_id>/messages/<uuid:message_id>/retry/",
        chat.reply_retry,
        name="reply_retry",
    ),
    path(
        "c/<uuid:public_id>/messages/<uuid:message_id>/stop/",
        chat.reply_stop,
        name="reply_stop",
    ),
    path(f"{MESSAGE}regenerate/", branches.reply_regenerate, name="reply_regenerate"),
    path(
        f"{MESSAGE}regenerate/stream/",
        branches.reply_regenerate_stream,
        name="reply_regenerate_stream",
    ),
    path(f"{MESSAGE}edit/", branches.message_edit, name="message_edit"),
    path(f"{MESSAGE}edit/stream/", branches.message_edit_stream, name="message_edit_stream"),
    path(f"{MESSAGE}show/", branches.branch_switch, name="branch_switch"),
    path(f"{MESSAGE}tool-results/", branches.tool_results_send, name="tool_results_send"),
    path(
        f"{MESSAGE}tool-results/stream/",
        branches.tool_results_stream,
        name="tool_results_stream",
    ),
    path(f"{MESSAGE}delete/", branches.branch_delete, name="branch_delete"),
    path("c/<uuid:public_id>/compare/", compare.compare_new, name="compare_new"),
    path("c/<uuid:public_id>/compare/start/", compare.compare_start, name="compare_start"),
    path(RUN, compare.compare_detail, name="compare_detail"),
    path(RUN + "share/", shares.compare_share, name="compare_share"),
    path(
        f"{RUN}columns/<int:position>/stream/",
        compare.compare_column_stream,
        name="compare_column_stream",
    ),
    path(
        f"{RUN}choose/<uuid:message_id>/",
        compare.compare_choose,
        name="compare_choose",
    ),
    path("files/<uuid:attachment_id>/", chat.attachment_file, name="attachment_file"),
    path("calls/<uuid:call_id>/", calls.call_detail, name="call_detail"),
    path("calls/<uuid:call_id>/record/", calls.call_record, name="call_record"),
    path("usage/", catalogue.usage_page, name="usage"),
    path("presets/", catalogue.preset_list, name="preset_list"),
    path("c/<uuid:public_id>/presets/save/", catalogue.preset_save, name="preset_save"),
    path("presets/<uuid:preset_id>/start/", catalogue.preset_start, name="preset_start"),
    path("presets/<uuid:preset_id>/delete/", catalogue.preset_delete, name="preset_delete"),
    path(
        "calls/<uuid:call_id>/<str:part>.json",
        calls.call_download,
        name="call_download",
    ),
    path("shares/", shares.share_list, name="share_list"),
    path("shares/<uuid:public_id>/update/", shares.share_update, name="share_update"),
    path("shares/<uuid:public_id>/settings/", shares.share_settings, name="share_settings"),
    path("shares/<uuid:public_id>/revoke/", shares.share_revoke, name="share_revoke"),
    path("s/<str:token>/", shares.shared_conversation, name="shared_conversation"),
    path("s/<str:token>/continue/", shares.share_continue, name="share_continue"),
    path("s/<str:token>/files/<str:sha256>/", shares.shared_file, name="shared_file"),
]
