"""Where scenes come from: the local archive, the simulated archive, STAC APIs over HTTP, the registry and the priority chain.

``base`` (the provider interface and scene references), ``local``, ``simulated``, ``stac``;
``http`` (verified downloads) with ``credentials``, ``retry`` and ``multihash``; ``registry``
and ``registry_models`` (the providers table); ``chain`` (fall through providers by priority).
"""
