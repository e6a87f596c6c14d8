"""The wheel in a project of its own: what a team does to adopt Conductor, run as they would run it.

One test, in steps, because each step needs the last: build the wheel from this checkout, install it in a
new virtualenv, create a project with ``django-admin startproject server`` and an app named ``app`` (both
names this repository uses too), add only the lines docs/install.md gives (read from that page), then
migrate, run a registered function and a ``django.tasks`` task with ``runtasks --once``, and serve the
dashboard with ``runtasks --serve``. pip's cache and the repository's pins keep the install short.
"""

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from websockets.sync.client import connect as connect_websocket

from tests import docblocks
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600), pytest.mark.xdist_group("install")]

USER_MODEL = """from django.db import models


class Order(models.Model):
    total = models.IntegerField(default=0)
    shipped = models.BooleanField(default=False)
"""

USER_TASKS = """from django.tasks import task

from conductor import register

from .models import Order


@register
def ship(order_id: int) -> None:
    Order.objects.filter(pk=order_id).update(shipped=True)


@register
async def ship_async(order_id: int) -> None:
    await Order.objects.filter(pk=order_id).aupdate(shipped=True)


@task
def invoice_total(order_id: int) -> int:
    return Order.objects.get(pk=order_id).total * 2
"""

#: The user's own test of a process-isolated task: the child must write to the test database.
USER_TESTS = """from django.core.management import call_command
from django.test import TransactionTestCase

from conductor.task import Task

from .models import Order


class ProcessIsolationTests(TransactionTestCase):
    def test_a_child_process_ships_the_order_in_the_test_database(self):
        order = Order.objects.create(total=1)
        Task(name="ship", func="app.tasks.ship", args_in={"order_id": order.pk}, isolation="process").save()
        call_command("runtasks", "--once", verbosity=0)
        order.refresh_from_db()
        self.assertTrue(order.shipped)
"""


class Project:
    """A new Django project in ``root`` whose Python is the fresh virtualenv's."""

    def __init__(self, root: Path, python: Path) -> None:
        self.root, self.python = root, python
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CONDUCTOR_"))}
        self.env.pop("DATABASE_URL", None)
        self.env.pop("REDIS_URL", None)
        self.env["PYTHONWARNINGS"] = "error::DeprecationWarning"

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.python), "manage.py", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if check:
            assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def shell(self, code: str) -> str:
        return self.manage("shell", "--no-imports", "-c", code).stdout.strip()


def run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def install_lines() -> dict[str, str]:
    """The code blocks docs/install.md marks with ``<!-- install: FILE -->``, by file."""
    text = (REPO / "docs" / "install.md").read_text()
    blocks = re.findall(r"<!-- install: (\S+) -->\n```python\n(.*?)```", text, flags=re.S)
    assert {name for name, _ in blocks} == {"settings.py", "urls.py", "asgi.py"}, blocks
    return dict(blocks)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, REPO)
    (built,) = out.glob("django_conductor-*.whl")
    return built


@pytest.fixture(scope="module")
def python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", venv)
    # The repository's pins as constraints: the versions it tests with, from pip's cache.
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-c", REPO / "requirements.txt", wheel)  # fmt: skip
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def project(python: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("userproject")
    run(python.parent / "django-admin", "startproject", "server", root)
    project = Project(root, python)
    project.manage("startapp", "app")
    (root / "app" / "models.py").write_text(USER_MODEL)
    (root / "app" / "tasks.py").write_text(USER_TASKS)
    settings = root / "server" / "settings.py"
    settings.write_text(settings.read_text() + '\nINSTALLED_APPS += ["app"]\n')
    for name, lines in install_lines().items():
        path = root / "server" / name
        path.write_text(path.read_text() + "\n" + lines.replace("mysite", "server"))
    project.manage("makemigrations", "app")
    project.manage("migrate", "--noinput")
    return project


def test_the_wheel_holds_the_conductor_package_with_its_templates_and_static_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"conductor", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "conductor/templates/conductor/dashboard.html" in names
    assert {"conductor/static/conductor/dashboard.js", "conductor/static/conductor/dashboard.css"} <= set(
        names
    )
    assert "conductor/migrations/0001_initial.py" in names
    assert not [n for n in names if "/demo/" in n or n.endswith("__pycache__")]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "Provides-Extra: redis" in metadata


def test_the_installed_version_is_the_distributions(python: Path, wheel: Path) -> None:
    code = "import conductor, importlib.metadata as m; "
    code += "print(conductor.__version__, m.version('django-conductor'))"
    version, distribution = run(python, "-c", code).split()
    assert version == distribution == wheel.name.split("-")[1]


def test_a_registered_function_of_the_users_app_changes_the_users_model(project: Project) -> None:
    order = project.shell("from app.models import Order; print(Order.objects.create(total=21).pk)")
    project.shell(
        "from conductor.task import Task; "
        f"Task(name='ship', func='app.tasks.ship', args_in={{'order_id': {order}}}).save()"
    )
    done = project.manage("runtasks", "--once")
    assert (
        project.shell(f"from app.models import Order; print(Order.objects.get(pk={order}).shipped)") == "True"
    )
    # A startproject's LOGGING has no handler for Conductor: runtasks adds one, so INFO lines show.
    assert re.search(r"INFO +conductor\.runner: Runner \S+ up: ", done.stderr), done.stderr
    # Its hint for live state names what configures it in this project, not this repository's REDIS_URL.
    assert "Live state stays in this process" in done.stderr
    assert "cross-process CHANNEL_LAYERS" in done.stderr
    assert "set REDIS_URL" not in done.stderr


@pytest.mark.parametrize("function", ["ship", "ship_async"])
def test_a_process_isolated_function_of_the_users_app_changes_the_users_model(
    project: Project, function: str
) -> None:
    order = project.shell("from app.models import Order; print(Order.objects.create(total=3).pk)")
    project.shell(
        "from conductor.task import Task; "
        f"Task(name='ship', func='app.tasks.{function}', args_in={{'order_id': {order}}}, "
        "isolation='process').save()"
    )
    done = project.manage("runtasks", "--once")
    shipped = project.shell(f"from app.models import Order; print(Order.objects.get(pk={order}).shipped)")
    assert shipped == "True", done.stderr


def test_a_process_isolated_function_under_the_users_tests_writes_to_the_test_database(
    project: Project,
) -> None:
    """Django's test runner renames the database in the parent only; the child must follow it, not the
    settings (which name the real database, where the order of the same id would be shipped instead)."""
    (project.root / "app" / "tests.py").write_text(USER_TESTS)
    settings = project.root / "server" / "settings.py"
    original = settings.read_text()
    try:  # a file, not SQLite's in-memory test database, which no other process can open
        settings.write_text(
            original + '\nDATABASES["default"]["TEST"] = {"NAME": BASE_DIR / "test.sqlite3"}\n'
        )
        done = project.manage("test", "app", "--noinput", check=False)
    finally:
        settings.write_text(original)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_django_task_enqueued_from_the_users_code_finishes_and_is_read_back(project: Project) -> None:
    order = project.shell("from app.models import Order; print(Order.objects.create(total=4).pk)")
    result_id = project.shell(
        f"from app.tasks import invoice_total; print(invoice_total.enqueue({order}).id)"
    )
    project.manage("runtasks", "--once")
    answer = project.shell(
        f"from app.tasks import invoice_total; r = invoice_total.get_result({result_id!r}); "
        "print(r.status, r.return_value)"
    )
    assert answer == "SUCCESSFUL 8"


def test_the_demo_functions_are_not_registered(project: Project) -> None:
    names = json.loads(
        project.shell("import json; from conductor import registry; print(json.dumps(registry.names()))")
    )
    assert "app.tasks.ship" in names
    assert not [name for name in names if name.rsplit(".", 1)[-1] in {"busy_loop", "failing_job", "slow_job"}]


def test_the_checks_pass_and_name_what_is_missing(project: Project) -> None:
    assert "no issues" in project.manage("check").stdout
    settings = project.root / "server" / "settings.py"
    original = settings.read_text()
    try:
        redis_layer = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
        settings.write_text(
            f'{original}\nINSTALLED_APPS.remove("channels")\nCHANNEL_LAYERS = {redis_layer!r}\n'
        )
        done = project.manage("check", check=False)
    finally:
        settings.write_text(original)
    assert done.returncode != 0
    assert "conductor.E007" in done.stderr
    assert 'Add "channels" to INSTALLED_APPS' in done.stderr
    assert "conductor.E008" in done.stderr
    assert "django-conductor[redis]" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_environment_variable_is_named_as_the_variable(project: Project) -> None:
    original = project.env
    project.env = {**original, "CONDUCTOR_THREADS": "abc"}
    try:
        done = project.manage("check", check=False)
    finally:
        project.env = original
    assert done.returncode != 0
    assert "CONDUCTOR_THREADS (in the environment) is 'abc'" in done.stderr
    assert "CONDUCTOR['THREADS']" not in done.stderr  # a dict this project never wrote


def test_an_asgi_py_without_the_route_is_named_with_the_lines_to_add(project: Project) -> None:
    """A startproject has no ASGI_APPLICATION: daphne would serve server/asgi.py, which must route the
    dashboard's socket (else daphne answers it with 500 and the page reconnects for ever)."""
    asgi = project.root / "server" / "asgi.py"
    original = asgi.read_text()
    try:
        asgi.write_text(original.split(install_lines()["asgi.py"])[0])  # as startproject wrote it
        done = project.manage("check", check=False)
    finally:
        asgi.write_text(original)
    said = done.stdout + done.stderr
    assert "conductor.W005" in said
    assert "server/asgi.py" in said
    assert "application = with_conductor(application)" in said
    assert "Traceback" not in said


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_block() -> docblocks.Block:
    """docs/install.md's "Run" block, which only a user's project can print (marked ``installed``)."""
    (block,) = [b for b in docblocks.blocks(REPO / "docs" / "install.md") if "installed" in b.options]
    assert "serves" in block.options
    assert block.output is not None
    return block


def staff_session(project: Project) -> str:
    return project.shell(
        "from django.contrib.auth.models import User;"
        "from django.contrib.sessions.backends.db import SessionStore;"
        "from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY;"
        "u = User.objects.create_user('ops', is_staff=True, is_superuser=True); s = SessionStore();"
        "s[SESSION_KEY] = str(u.pk); s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend';"
        "s[HASH_SESSION_KEY] = u.get_session_auth_hash(); s.save(); print(s.session_key)"
    )


def test_the_install_docs_run_block_prints_its_lines_and_serves_the_dashboard(
    project: Project, tmp_path: Path
) -> None:
    """The page's commands, as a user types them in their project, print the page's output lines (the
    dashboard's URL where the project mounted it, the runner's INFO line), and that URL is the dashboard."""
    project.shell(
        "from conductor.task import Task; "
        "Task(task_id='users-own', name='the users own task', func='app.tasks.ship', run_in=3600, "
        "args_in={'order_id': 0}).save()"
    )
    session = staff_session(project)
    block, port = run_block(), free_port()
    expected = re.sub(r"\b8000\b", str(port), block.output.text)
    script = docblocks.exec_last(re.sub(r"\b8000\b", str(port), block.text))
    env = {**project.env, "PATH": f"{project.python.parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    log = tmp_path / "serve.log"  # read by path: the server's own file offset is left alone
    with log.open("wb") as out:
        server = subprocess.Popen(["sh", "-e", "-c", script], cwd=project.root, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        try:
            failure = _served_failure(server, log, expected, session)
        finally:
            server.terminate()
            server.wait(timeout=30)
    output = log.read_text()
    assert failure is None, f"{failure}\n--- {block.where} said:\n{output}"
    assert "Traceback" not in output, output


def _served_failure(server: subprocess.Popen, log: Path, expected: str, session: str) -> str | None:
    """What is wrong with the served block's output or dashboard, or None (the caller adds the output)."""

    def printed() -> str:
        return log.read_text(errors="replace")

    try:
        wait_until(lambda: docblocks.output_contains(expected, printed()) or server.poll() is not None,
                   timeout=60, interval=0.05, message="runtasks --serve up")  # fmt: skip
        assert docblocks.output_contains(expected, printed()), f"docs/install.md shows:\n{expected}"
        (url,) = re.findall(r"^Dashboard: (\S+)$", printed(), flags=re.M)
        _check_dashboard(url, session)
    except (AssertionError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_dashboard(url: str, session: str) -> None:
    base, path = re.fullmatch(r"(http://[^/]+)(/.*)", url).groups()
    assert path == "/conductor/", url  # where the project's urls.py mounted conductor.urls
    page = _get(url, session)
    assert page.status == 200
    html = page.read().decode()
    assert 'data-socket="/ws/dashboard/"' in html
    assets = re.findall(r'(?:href|src)="(/static/conductor/[^"]+)"', html)
    assert len(assets) >= 2, html
    for asset in assets:
        assert _get(base + asset, session).status == 200, asset
    headers = {"Cookie": f"sessionid={session}", "Origin": base}
    with connect_websocket(f"{base.replace('http', 'ws')}/ws/dashboard/", additional_headers=headers) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
    assert snapshot["type"] == "snapshot"
    assert "the users own task" in [task["name"] for task in snapshot["tasks"]]
    assert "app.tasks.ship" in [function["path"] for function in snapshot["functions"]]


def _get(url: str, session: str):
    request = urllib.request.Request(url, headers={"Cookie": f"sessionid={session}"})
    return urllib.request.urlopen(request, timeout=10)


def test_a_database_of_an_older_conductor_gets_a_one_line_instruction(project: Project) -> None:
    old = project.root / "old.sqlite3"
    code = (
        "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]);"
        "db.execute('CREATE TABLE django_migrations (id integer primary key, app, name, applied)');"
        "db.executemany('INSERT INTO django_migrations (app, name, applied) VALUES (?, ?, 0)',"
        "[('app', '0001_initial'), ('app', '0002_db_use_lease'), ('app', '0006_runner_degraded')]);"
        "db.commit()"
    )
    run(project.python, "-c", code, old)
    settings = project.root / "server" / "settings.py"
    original = settings.read_text()
    try:
        settings.write_text(original + f'\nDATABASES["default"]["NAME"] = {str(old)!r}\n')
        said = [
            project.manage(*command, check=False)
            for command in (["migrate", "--noinput"], ["runtasks", "--once"])
        ]
    finally:
        settings.write_text(original)
    for done in said:  # runtasks runs the database checks that migrate runs
        assert done.returncode != 0
        assert "conductor.E010" in done.stderr
        assert "Start from a new database" in done.stderr
        assert "Traceback" not in done.stderr


def test_runtasks_on_a_database_not_migrated_yet_says_to_migrate(project: Project) -> None:
    settings = project.root / "server" / "settings.py"
    original = settings.read_text()
    try:
        empty = project.root / "empty.sqlite3"
        settings.write_text(original + f'\nDATABASES["default"]["NAME"] = {str(empty)!r}\n')
        done = project.manage("runtasks", "--once", check=False)
    finally:
        settings.write_text(original)
    assert done.returncode != 0
    assert "run `manage.py migrate` first" in done.stderr
    assert "Traceback" not in done.stderr
