# The data step between adding the new message fields (0008) and removing raw_request
# (0010): a migration of its own, since PostgreSQL refuses to alter a table in the
# transaction that updated its rows ("pending trigger events").

import json

from django.db import migrations


def carry_over(apps, schema_editor):
    """Raw bodies as the text that was sent (our compact encoding), and every user
    message marked as written by the user."""
    Message = apps.get_model("chat", "Message")
    Message.objects.filter(role="user").update(written=True)
    for message in Message.objects.filter(raw_request__isnull=False).only("raw_request").iterator():
        message.raw_body = json.dumps(
            message.raw_request, ensure_ascii=False, separators=(",", ":")
        )
        message.save(update_fields=["raw_body"])


class Migration(migrations.Migration):
    dependencies = [("chat", "0008_message_api_structure_attachments")]

    operations = [migrations.RunPython(carry_over, migrations.RunPython.noop)]
