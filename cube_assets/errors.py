"""Errors raised where bad input is first seen; each message names the input and what was wrong."""


class CubeAssetsError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidCubeConfig(CubeAssetsError):
    """A cube configuration file or value is malformed."""


class InvalidScene(CubeAssetsError):
    """A scene (product folder, band file, metadata) is missing, unreadable or inconsistent."""


class InvalidRaster(CubeAssetsError):
    """A raster file or array does not have the shape, type or georeferencing it must have."""


class InvalidExpression(CubeAssetsError):
    """A band-index expression uses something the restricted evaluator does not allow."""


class InvalidQualityRule(CubeAssetsError):
    """A quality-mask rule cannot be parsed or refers to an unknown field."""


class ProviderError(CubeAssetsError):
    """A provider could not search for or deliver a scene."""


class CatalogError(CubeAssetsError):
    """A catalog object or query is invalid."""


class InvalidManifest(CubeAssetsError):
    """A stage manifest in the store is not JSON or not the manifest its stage writes."""
