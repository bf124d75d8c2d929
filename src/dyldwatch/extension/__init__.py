"""The osquery runtime: our tables served over osquery's Thrift extension protocol.

Owns: adapter (rows to wire), runtime (manager connection, server), private_socket, protocol/.
May import: tables (and thrift). Independent of sql/.
"""
