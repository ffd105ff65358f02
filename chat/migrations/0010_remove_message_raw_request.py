from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chat", "0009_message_carry_over")]

    operations = [migrations.RemoveField(model_name="message", name="raw_request")]
