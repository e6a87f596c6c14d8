# Task.created_at and updated_at are stamped by Task.save() from the database's clock instead of auto_now
# (app/task.py). Only the model's Python side changes: no column, constraint or database default does, so
# the database is left alone (SQLite would otherwise rebuild the task table, twice, for nothing).

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('conductor', '0004_runner_clock_offset'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='task',
                    name='created_at',
                    field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                migrations.AlterField(
                    model_name='task',
                    name='updated_at',
                    field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
            ],
            database_operations=[],
        ),
    ]
