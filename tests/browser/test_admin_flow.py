"""Admin and dashboard together: a task made in the admin's form runs, live, on the dashboard."""

import re

import pytest
from playwright.sync_api import expect

from app.task import Task
from tests.browser.conftest import PASSWORD
from tests.conftest import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("browser"),
]


def test_a_looping_task_created_in_the_admin_runs_on_the_dashboard(
    open_dashboard, dashboard_server, make_page
):
    dashboard = open_dashboard()  # logs "boss" in; the admin page below shares nothing with it
    admin = make_page()
    admin.goto(f"{dashboard_server.url}/admin/login/?next=/admin/conductor/task/add/")
    admin.fill("#id_username", "boss")
    admin.fill("#id_password", PASSWORD)
    admin.click("input[type=submit]")
    admin.wait_for_url("**/admin/conductor/task/add/")

    admin.fill("#id_name", "heartbeat check")
    admin.select_option("#id_func", "tests.functions.add")
    admin.fill("#id_args_in", '{"a": 20, "b": 22}')
    admin.check("#id_loop")
    admin.fill("#id_interval", "1")
    admin.click("input[name=_save]")
    expect(admin.locator(".messagelist")).to_contain_text("was added successfully")

    task = wait_until(lambda: Task.objects.filter(name="heartbeat check").first())
    row = dashboard.locator(f'[data-testid="task-row"][data-task-id="{task.pk}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(re.compile(r"every 1(\.0)? s"))
    # It runs again and again: the run count the dashboard shows goes up without a reload.
    expect(row).to_contain_text("2 runs", timeout=15_000)
    expect(row).to_contain_text("42")
