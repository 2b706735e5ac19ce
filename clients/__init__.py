"""Cloison clients; they reach the server over the wire and import only ``protocol``."""
