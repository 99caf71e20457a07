"""$SIDREC_LIFELINE for the jobs of this snakemake process.

The stage CLIs stop when the process named by the token is gone (sidrec/cli/lifeline.py):
a killed snakemake otherwise leaves its jobs' shells, and the trainers under them, running.
Same "host:pid:start" format as sidrec.cli.lifeline.token, written here because the
Snakefile never imports sidrec. A module of its own (not inline in common.smk) so that
`snakemake --lint` does not read /proc and the variable as workflow inputs.
"""
import os
import socket
from pathlib import Path

VARIABLE = "SIDREC_LIFELINE"


def lifeline_token():
    try:
        # field 22 of /proc/PID/stat: the start time, so a reused pid is not mistaken for us
        start = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        start = ""
    return f"{socket.gethostname()}:{os.getpid()}:{start}"


def export_lifeline():
    """Every job inherits it; a cluster job's own snakemake sets its own on its node."""
    os.environ[VARIABLE] = lifeline_token()
