"""The reaper left the beat schedule for a thread in the beat process (octopus/celery.py).
django-celery-beat keeps settings entries it once stored, so the stored one is removed here;
otherwise it would keep sending a pass to the workers every 30 s."""

from django.db import migrations

ENTRY = "octopus-reap-lost-tasks"


def remove_entry(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=ENTRY).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_app", "0006_tasklog_task_no_db_constraint"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(remove_entry, migrations.RunPython.noop)]
