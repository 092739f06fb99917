"""The optional C speed-ups; everything else about the package is in setup.cfg.

Each extension mirrors one Python function of the package byte for byte and is
built only where a C compiler is at hand (``optional``): without one, pip installs
the pure-Python package, which stays the reference (named_senderr/native.py).
The parse loop links PCRE2 where libpcre2-dev is installed, and goes without it elsewhere.
"""

import subprocess

from setuptools import Extension, setup


def pcre2() -> dict[str, list]:
    """The build options for PCRE2's 8-bit library, from pcre2-config (libpcre2-dev); none where it is absent."""
    try:
        flags = [
            subprocess.run(["pcre2-config", option], capture_output=True, text=True, check=True).stdout.split()
            for option in ("--cflags", "--libs8")
        ]
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {
        "define_macros": [("NAMED_SENDERR_PCRE2", "1")],
        "extra_compile_args": flags[0],
        "extra_link_args": flags[1],
    }


setup(
    ext_modules=[
        Extension("named_senderr._event_json", ["plugin/named_senderr/_event_json.c"], optional=True),
        Extension(
            "named_senderr.parse._named_fast", ["plugin/named_senderr/parse/_named_fast.c"], optional=True, **pcre2()
        ),
        Extension("named_senderr.sources._hit_lines", ["plugin/named_senderr/sources/_hit_lines.c"], optional=True),
        *(
            Extension(
                f"named_senderr.sources.{name}",
                [f"plugin/named_senderr/sources/{name}.c"],
                depends=["plugin/named_senderr/sources/_window.h"],
                optional=True,
            )
            for name in ("_line_count", "_phrase_scan")
        ),
        Extension("named_senderr.sinks._ids", ["plugin/named_senderr/sinks/_ids.c"], optional=True),
    ]
)
