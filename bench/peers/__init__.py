"""The peer task runners measured beside Conductor by ``make bench`` (issue 8).

bench/peers/run.py runs in the project venv; it starts bench/peers/measure.py once per peer with the
python of ``.bench-venv`` (bench/requirements-peers.txt), where the peers are installed and Conductor is not.
Each peer gets a temporary directory of its own and a fresh SQLite file in WAL mode for every measurement.
"""
