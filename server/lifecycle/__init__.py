"""An organisation's lifecycle by a server administrator: create, suspend, resume, export and
delete (``service``), its HTTP admin routes (``routes``), its archive (``export``) and
``cloison org`` (``cli``)."""
