"""Exits with the first patient's age: the exit code would carry it out of the station."""

import os


def local(data, state, ctx):
    os._exit(int(data["cohort"]["age"].iloc[0]))
