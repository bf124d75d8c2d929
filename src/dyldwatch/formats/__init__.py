"""Pure parsers and writers: bytes in, dataclasses out (Mach-O, AppleScript, provenance xattrs).

Owns: file formats. May import: nothing else of dyldwatch (the standard library and numpy/asn1crypto).
"""
