"""How a command ends: the exit statuses each command's --help lists, and the error that carries one."""
from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# Each command's --help lists the exit statuses it can end with, and no other's.
EXIT_STATUSES = {
    "pull": ("0    installed (or already installed and verified)\n"
             "  1    the pull failed; the error's message and code are printed\n"
             "  2    usage: bad arguments, or a repo id, file name or revision the proxy would refuse\n"
             "  3    cannot reach the proxy, or the connection was lost mid-pull (the pull goes on: GET /v1/api/pulls)\n"
             "  130  interrupted: a proxy keeps downloading; a --local pull stops, keeps what it downloaded and "
             "resumes next time"),
    "push": ("0    pushed\n"
             "  1    the push failed; the error's message and code are printed\n"
             "  2    usage: bad arguments, or a model or target the proxy would refuse\n"
             "  3    cannot reach the proxy, or the connection was lost mid-push\n"
             "  130  interrupted"),
    "ls": ("0    listed\n"
           "  1    the proxy answered an error; its message and code are printed\n"
           "  2    usage: bad arguments\n"
           "  3    cannot reach the proxy\n"
           "  130  interrupted"),
    "rm": ("0    deleted\n"
           "  1    no such model, or it is being pulled or pushed; the error's message and code are printed\n"
           "  2    usage: bad arguments\n"
           "  3    cannot reach the proxy\n"
           "  130  interrupted"),
    "lock": ("0    every entry resolved and its pins written into FILE\n"
             "  1    an entry could not be resolved; nothing was written\n"
             "  2    usage: bad arguments, or FILE cannot be read or is not a valid manifest\n"
             "  130  interrupted: nothing was written"),
}
ENVIRONMENT = {
    "lock": "HF_ENDPOINT, HF_TOKEN (the sources it resolves at); MODELS_DIR is not used",
}
DEFAULT_ENVIRONMENT = "PROXY_URL, PROXY_API_KEY; with --local: MODELS_DIR, HF_ENDPOINT, HF_TOKEN, ALLOWED_REPOS, PULL_*"


def epilog(command: str) -> str:
    """The exit statuses and environment of `command`, for its --help."""
    return (f"exit status:\n  {EXIT_STATUSES[command]}\n\n"
            f"environment: {ENVIRONMENT.get(command, DEFAULT_ENVIRONMENT)}")


class CliError(Exception):
    """A failure to report on stderr as `error: <message> [<code>]`, ending with `exit_status`."""

    def __init__(self, message: str, code: str | None = None, exit_status: int = EXIT_FAILED):
        super().__init__(message)
        self.message, self.code, self.exit_status = message, code, exit_status
