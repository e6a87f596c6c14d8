"""The demo project's own app: the task functions and tasks that ``make run`` shows off.

It is part of this repository's deployable project, never of the installed ``conductor`` package.
"""
