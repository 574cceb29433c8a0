"""The addons' ``--set llmock_*`` options: a typo or a bad value stops mitmdump with one line.

mitmproxy itself is lenient with options of ``-s`` scripts, because a script
declares its options only once it is loaded, after the command line was read:

* ``--set name=value`` of an option nobody declared is kept aside
  (``Options.deferred``) in case a script declares it later, and silently
  forgotten when none does: ``llmock_cassete_dir=x`` would start a proxy
  with the default directory.
* A value that does not convert (``llmock_miss_status=abc``) fails while the
  script is being registered: its ``configure`` never runs and the proxy
  starts without the addon doing anything, saying nothing.
* An ``OptionsError`` raised by an addon's ``configure`` is printed with a
  Python traceback before mitmdump's "Error logged during startup, exiting...".
* ``choices`` of a string option are not enforced (``llmock_mode=autoo``).

So every addon (record, replay, drift) carries an :class:`OptionCheck`
sub-addon, and its ``configure`` is wrapped in :func:`refusing`:

* values given on the command line are converted by the check itself as
  soon as the addon has declared them, so one that does not convert is
  reported instead of breaking the script's load;
* an ``OptionsError`` from ``configure`` while mitmproxy starts up becomes
  one ERROR log line per bad option (an addon checks them all before it
  raises), ``llmock: <option>: <what is wrong, what is valid>``:
  mitmproxy's start-up error check then stops mitmdump (exit status 1)
  without a traceback. Once running (an option changed in mitmproxy's
  console or web UI), the error is raised as usual: mitmproxy keeps the
  previous value and shows the message;
* once every script is loaded (``running``), a ``--set`` option no loaded
  addon declared that looks like one of ours (``llmock_...``, or close to
  one of our names) is reported as unknown, with the closest known name
  ("unknown option llmock_cassete_dir; did you mean llmock_cassette_dir?").
"""

from __future__ import annotations

import difflib
import functools
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mitmproxy import ctx, exceptions

log = logging.getLogger(__name__)

PREFIX = "llmock_"

_Configure = TypeVar("_Configure", bound=Callable[..., None])

# What was reported already, per mitmproxy master: several addons (and both
# addons' checks) see the same bad option; it is said once.
_reported: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def ours(name: str) -> bool:
    return name.startswith(PREFIX)


def bad_choice(name: str, value: object, choices: Iterable[str]) -> exceptions.OptionsError:
    """The error for a value outside an option's choices."""
    return exceptions.OptionsError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def starting_up() -> bool:
    """Whether mitmproxy is still starting: an error logged now stops it
    (mitmdump's and mitmweb's start-up error check is listening)."""
    check = ctx.master.addons.get("errorcheck")
    handler = getattr(check, "logger", None)
    return handler is not None and handler in logging.getLogger().handlers


def report(message: str) -> None:
    """Log ``message`` as an error, once per proxy."""
    seen = _reported.setdefault(ctx.master, set())
    if message in seen:
        return
    seen.add(message)
    if ours(message):  # "llmock_timing: ...": the option, then what is wrong
        log.error("llmock: bad value for %s", message)
    elif message.startswith("llmock"):
        log.error("%s", message)
    else:
        log.error("llmock: %s", message)


def refusing(configure: _Configure) -> _Configure:
    """Wraps an addon's ``configure``: an ``OptionsError`` while mitmproxy
    starts is one logged line (mitmproxy then stops), later it is raised."""

    @functools.wraps(configure)
    def checked(self: Any, updated: set[str]) -> None:
        try:
            configure(self, updated)
        except exceptions.OptionsError as exc:
            if not starting_up():
                raise
            for line in str(exc).splitlines():  # an addon reports every bad option, a line each
                report(line)

    return checked  # type: ignore[return-value]


class OptionCheck:
    """Sub-addon of each llmock addon (listed after its other sub-addons):
    converts the addon's command-line values as soon as they are declared,
    and reports unknown ``llmock_*`` options once every script is loaded."""

    def __init__(self) -> None:
        # mitmproxy refuses two addons of one name: each addon carries one.
        self.name = f"llmock_option_check_{id(self):x}"

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        # The parent addon's load ran first: its options are declared now.
        convert_deferred(loader.master.options)

    def running(self) -> None:
        for message in unknown_options(ctx.options):
            report(message)


def convert_deferred(options: Any) -> None:
    """Apply the command-line values of our declared options one by one,
    reporting (and dropping) those that do not convert, which would
    otherwise fail the whole script's registration."""
    for name in [n for n in options.deferred if ours(n) and n in options]:
        value = options.deferred.pop(name)
        strings = getattr(value, "val", None)  # --set values, still strings
        try:
            if strings is None:
                options.update(**{name: value})  # a config file's value, already typed
            else:
                options.set(*([f"{name}={s}" for s in strings] or [name]))
        except exceptions.OptionsError as exc:
            report(_conversion_message(name, strings, options.default(name), exc))


def _conversion_message(name: str, strings: list[str] | None, default: object, exc: Exception) -> str:
    if strings is None or len(strings) != 1:
        return str(exc)
    given = strings[0]
    if isinstance(default, bool):
        return f"{name}: {given!r} is not true or false"
    if isinstance(default, int):
        return f"{name}: {given!r} is not a whole number"
    return f"{name}: {exc}"


def unknown_options(options: Any) -> list[str]:
    """A line for each ``--set`` option no loaded addon declared that looks
    like one of ours."""
    known = sorted(n for n in options.keys() if ours(n))
    lines = []
    for name in sorted(options.deferred):
        spelled = name.replace("-", "_").lower()
        close = difflib.get_close_matches(spelled, known, n=1, cutoff=0.75)
        if not ours(spelled) and not close:
            continue  # another script's option, or mitmproxy's own business
        if close:
            lines.append(f"unknown option {name}; did you mean {close[0]}?")
        else:
            lines.append(f"unknown option {name}; the loaded llmock addons' options: {', '.join(known)}")
    return lines
