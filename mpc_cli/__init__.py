"""The ``mpc`` command line: ``server``, ``certs``, ``demo``.

This is a front end over the other packages; it is the only package that
imports both the server and the client SDK.
"""
