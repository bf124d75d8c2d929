"""Everything that ships the extension: the osquery host layout, the one-file artifact, the operator
bundle, install, and the configuration templates (package data in templates/).

Owns: deployment. May import: packs, tables, resources. Never cli or extension.
"""
