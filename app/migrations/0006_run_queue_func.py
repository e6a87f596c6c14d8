"""Each run records its task's queue and function (filled by the claim from now on): the runs lists filter
and the charts group on them through indexes of their own, without joining the task table.

Existing runs take their task's values as they are now (one UPDATE with correlated subqueries, portable to
SQLite and PostgreSQL; it rewrites the run table once; on SQLite, Django adds each NOT NULL column by
copying the table, twice more). Three indexes go, so a claim and a
finish write no more index entries than before: the foreign keys' own indexes (run_task_page and the
runner's two indexes begin with the same column) and run_task_recent (a task's runs are now read by id,
which orders them as started_at does: a task's runs never overlap).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

TABLE = "conductor_taskrun"
# The foreign keys' indexes as 0001_initial made them (Django names them from table and column).
FOREIGN_KEY_INDEXES = {"task_id": "conductor_taskrun_task_id_f602d490",
                       "runner_id": "conductor_taskrun_runner_id_8d69dcd9"}  # fmt: skip


def copy_queue_and_func(apps, schema_editor) -> None:
    TaskRun = apps.get_model("conductor", "TaskRun")
    Task = apps.get_model("conductor", "Task")
    task = Task.objects.using(schema_editor.connection.alias).filter(pk=OuterRef("task_id"))
    TaskRun.objects.using(schema_editor.connection.alias).update(
        queue=Subquery(task.values("queue")[:1]), func=Subquery(task.values("func")[:1])
    )


def drop_foreign_key_index(column: str) -> migrations.RunSQL:
    # Only the index, by its name: AlterField(db_index=False) would copy the whole table again on SQLite.
    name = FOREIGN_KEY_INDEXES[column]
    return migrations.RunSQL(f'DROP INDEX "{name}"', f'CREATE INDEX "{name}" ON "{TABLE}" ("{column}")')


class Migration(migrations.Migration):

    dependencies = [
        ('conductor', '0005_task_stamps_by_database_clock'),
    ]

    operations = [
        migrations.AddField(
            model_name='taskrun',
            name='queue',
            field=models.CharField(default='', help_text="The task's queue when this run began.", max_length=100),
        ),
        migrations.AddField(
            model_name='taskrun',
            name='func',
            field=models.CharField(default='', help_text="The task's function (dotted path) when this run began.", max_length=255),
        ),
        migrations.RunPython(copy_queue_and_func, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='taskrun',
                    name='task',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='conductor.task'),
                ),
                migrations.AlterField(
                    model_name='taskrun',
                    name='runner',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='runs', to='conductor.runnerprocess'),
                ),
            ],
            database_operations=[drop_foreign_key_index("task_id"), drop_foreign_key_index("runner_id")],
        ),
        migrations.RemoveIndex(
            model_name='taskrun',
            name='run_task_recent',
        ),
        migrations.AddIndex(
            model_name='taskrun',
            index=models.Index(fields=['queue', 'id'], name='run_queue_page'),
        ),
        migrations.AddIndex(
            model_name='taskrun',
            index=models.Index(fields=['func', 'id'], name='run_func_page'),
        ),
    ]
