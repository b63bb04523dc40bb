"""The client API servicer: decode, call the service layer, encode.

Imports the service layer, the transport's status mapping and the generated
code; holds no business logic of its own.
"""
