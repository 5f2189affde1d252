"""The web service over the catalog: the STAC API, map tiles, the viewer and pixel time series (FastAPI)."""
