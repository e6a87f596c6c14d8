"""PostgreSQL wakes runners itself: a task inserted or made due by any writer (``bulk_create``, raw SQL,
another program) sends ``NOTIFY conductor_tasks``, as ``Task.save()`` used to do by hand.

Statement-level triggers, so a bulk insert notifies once; the UPDATE trigger compares old and new rows
(transition tables) and stays silent for the runner's own claims and for rows whose due time did not
change. PostgreSQL merges identical notifications of one transaction. Nothing happens on SQLite, whose
runners watch the database file instead.
"""

from django.db import migrations

CHANNEL = "conductor_tasks"  # app/wakeup.py listens on it
WAITING = "waiting"  # TaskStatus.WAITING, fixed here as migrations must be

CREATE = f"""
CREATE FUNCTION conductor_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE status = '{WAITING}' AND NOT paused) THEN
        PERFORM pg_notify('{CHANNEL}', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION conductor_notify_made_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.status = '{WAITING}' AND NOT n.paused
          AND (o.status <> '{WAITING}' OR o.paused OR o.next_run IS DISTINCT FROM n.next_run)
    ) THEN
        PERFORM pg_notify('{CHANNEL}', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conductor_task_inserted AFTER INSERT ON conductor_task
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION conductor_notify_inserted();
CREATE TRIGGER conductor_task_made_due AFTER UPDATE ON conductor_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION conductor_notify_made_due();
"""

DROP = """
DROP TRIGGER IF EXISTS conductor_task_made_due ON conductor_task;
DROP TRIGGER IF EXISTS conductor_task_inserted ON conductor_task;
DROP FUNCTION IF EXISTS conductor_notify_made_due();
DROP FUNCTION IF EXISTS conductor_notify_inserted();
"""


def on_postgresql(sql: str):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("conductor", "0001_initial")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP), elidable=False)]
