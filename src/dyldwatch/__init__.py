"""dyldwatch: osquery tables and packs for suspicious dynamic code loading."""

__version__ = "0.1.0"
