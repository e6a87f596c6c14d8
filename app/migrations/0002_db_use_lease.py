from django.db import migrations


def create_lease(apps, schema_editor):
    apps.get_model("app", "Lease").objects.get_or_create(name="db_use")


class Migration(migrations.Migration):
    dependencies = [("app", "0001_initial")]

    operations = [migrations.RunPython(create_lease, migrations.RunPython.noop)]
