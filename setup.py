"""The optional C speed-ups; everything else about the package is in setup.cfg.

Each extension mirrors one Python function of the package byte for byte and is
built only where a C compiler is at hand (``optional``): without one, pip installs
the pure-Python package, which stays the reference (named_senderr/native.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("named_senderr._event_json", ["plugin/named_senderr/_event_json.c"], optional=True),
        Extension("named_senderr.parse._named_fast", ["plugin/named_senderr/parse/_named_fast.c"], optional=True),
        Extension("named_senderr.sources._hit_lines", ["plugin/named_senderr/sources/_hit_lines.c"], optional=True),
        Extension("named_senderr.sinks._ids", ["plugin/named_senderr/sinks/_ids.c"], optional=True),
    ]
)
