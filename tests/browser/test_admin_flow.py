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


def test_a_run_goes_from_the_admin_to_its_task_page_and_back(open_dashboard, dashboard_server):
    page = open_dashboard()
    task = Task.objects.create(name="linked run", func="tests.functions.add", args_in={"a": 40, "b": 2})
    run = wait_until(lambda: task.runs.filter(status="finished").first())
    other = Task.objects.create(name="another", func="tests.functions.add", args_in={"a": 1})
    other_run = wait_until(lambda: other.runs.filter(status="finished").first())

    page.goto(f"{dashboard_server.url}/admin/conductor/taskrun/{run.pk}/change/")
    page.get_by_test_id("live-page-link").click()
    page.wait_for_url(f"**/dashboard/tasks/{task.task_id}/?run={run.pk}")
    detail = page.get_by_test_id("run-detail")
    expect(detail).to_have_attribute("data-status", "finished")
    expect(detail.get_by_test_id("run-output")).to_have_text("42")

    detail.get_by_test_id("run-admin-link").click()
    page.wait_for_url(f"**/admin/conductor/taskrun/{run.pk}/change/")

    # The address names only this task's runs: another task's run is refused, not shown as this one's.
    page.goto(f"{dashboard_server.url}/dashboard/tasks/{task.task_id}/?run={other_run.pk}")
    expect(detail.get_by_test_id("run-detail-summary")).to_have_text(
        f"Run {other_run.pk} is a run of another task ({other.task_id})."
    )
    expect(detail.get_by_test_id("run-output")).to_have_text("")
    page.get_by_test_id("close-run-detail").click()
    expect(detail).to_be_hidden()
    assert "run=" not in page.url
