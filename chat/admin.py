from django.contrib import admin

from .models import ApiCall, CompareColumn, CompareRun, Conversation, Invitation, Message


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["role", "status", "content", "parent", "created"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "model", "updated"]
    list_filter = ["model"]
    search_fields = ["title", "owner__username", "public_id"]
    readonly_fields = ["public_id", "current_leaf", "created", "updated"]
    raw_id_fields = ["owner"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["__str__", "conversation", "role", "status", "created"]
    list_filter = ["role", "status"]
    search_fields = ["content", "public_id"]
    readonly_fields = [
        "public_id",
        "conversation",
        "parent",
        "compare_column",
        "idempotency_key",
        "created",
        "updated",
    ]


@admin.register(ApiCall)
class ApiCallAdmin(admin.ModelAdmin):
    list_display = ["public_id", "conversation", "status", "http_status", "latency_ms", "created"]
    list_filter = ["status", "http_status", "error_kind"]
    search_fields = ["public_id", "conversation__title"]
    # The raw record is evidence of what went over the wire: never editable.
    readonly_fields = [field.name for field in ApiCall._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


class CompareColumnInline(admin.TabularInline):
    model = CompareColumn
    fields = ["position", "model", "temperature", "top_p", "max_tokens", "generation_started"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(CompareRun)
class CompareRunAdmin(admin.ModelAdmin):
    list_display = ["public_id", "conversation", "created"]
    search_fields = ["public_id", "conversation__title"]
    readonly_fields = ["public_id", "conversation", "prompt", "chosen", "created", "updated"]
    inlines = [CompareColumnInline]

    def has_add_permission(self, request) -> bool:
        return False  # a run is made by sending a prompt, not by hand


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "note", "expires_at", "used_by", "used_at", "created"]
    search_fields = ["note", "used_by__username"]
    readonly_fields = ["token", "used_at", "used_by", "created", "updated"]
    raw_id_fields = ["used_by"]

    def has_add_permission(self, request) -> bool:
        return False  # made with `manage.py invite`, which prints the link
