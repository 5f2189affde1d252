"""The ``stac`` driver: search a STAC API with pystac-client, download band assets over HTTP.

A :class:`StacProvider` is configured by :class:`StacOptions` (in the cube YAML under a
provider's ``options``, or in a registry JSON file; ``cube_assets/providers/examples/`` has
Earth Search, the Copernicus Data Space STAC and the BDC STAC).

**Search** (``POST /search`` through pystac-client, following every ``next`` link, so any
paging scheme the API uses works: tokens in the body, in the URL, merged or not): the collection
(translated with ``collections``), the tile geometry as ``intersects``, the time window as a
closed ``datetime`` interval, and the cloud-cover limit as a CQL2-JSON ``filter`` when the API
declares the filter conformance class, else as a ``query`` when it declares the query extension,
else applied on this side only. Whatever the API returns, the common rules of
:func:`~cube_assets.providers.base.select_scenes` are applied again (half-open window, footprint
intersection, cloud cover), so results do not depend on how loosely an API filters.

**Scene ids.** The Item id by default. ``scene_id_property`` takes it from a property instead
(``s2:product_uri`` on Earth Search, without ``.SAFE``), so that providers which name the same
product differently agree on its id and a provider chain can fall back from one to the other.

**Bands → assets.** A cube band is found in an Item's assets by, in order: the ``assets``
option (a key or a list of candidate keys); an asset whose key is the band name; a single-band
asset whose ``eo:bands`` (or STAC 1.1 ``bands``) name is the band name, GeoTIFFs first; then
:func:`~cube_assets.formats.stac_item.asset_key_for_band` (the key in another case, Earth
Search's key of a Sentinel-2 band such as ``red`` for ``B04``, the asset of Landsat ``SR_Bn``).
With
``alternate`` (``"https"`` for the Copernicus Data Space, whose main hrefs are ``s3://``), the
asset's ``alternate.{name}.href`` is used when present.

**Downloads** go through :class:`~cube_assets.providers.http.HttpClient`: streamed, resumed with
``Range``, checked against ``file:size`` and ``file:checksum`` when the Item has them, retried
with backoff (``retries``, ``backoff_s``, ``backoff_max_s``, ``timeout_s``). Searches retry the
same statuses with the same backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from cube_assets.errors import ProviderError
from cube_assets.formats.stac_item import asset_key_for_band
from cube_assets.names import check_name, name_problem
from cube_assets.providers.base import Provider, SceneRef, check_search_arguments, select_scenes
from cube_assets.providers.credentials import Credentials, check_credentials_spec, credentials_from_spec
from cube_assets.providers.http import DownloadResult, HttpClient, RemoteFile
from cube_assets.providers.retry import RetryPolicy
from cube_assets.quoting import quoted
from cube_assets.redaction import redact_url, redact_urls_in_text

logger = logging.getLogger(__name__)

CLOUD_COVER = "eo:cloud_cover"
#: Band names looked up with ``asset_key_for_band`` when no asset has them as key or band name.
_USUAL_BAND_NAMES = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
    "SCL",
    "AOT",
    "WVP",
    "SR_B1",
    "SR_B2",
    "SR_B3",
    "SR_B4",
    "SR_B5",
    "SR_B6",
    "SR_B7",
    "QA_PIXEL",
)
_SCENE_PROPERTY_EXCLUDES = frozenset({"format", "assets", "stac_item", "bands"})


class StacOptions(BaseModel):
    """Options of a ``stac`` provider (see the module docstring for what each does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    collections: dict[str, str] = Field(default_factory=dict)
    assets: dict[str, str | list[str]] = Field(default_factory=dict)
    alternate: str | None = None
    scene_id_property: str | None = None
    page_size: int = Field(default=100, ge=1, le=10000)
    max_items: int | None = Field(default=None, ge=1)
    cloud_cover_filter: Literal["auto", "cql2-json", "query", "none"] = "auto"
    retries: int = Field(default=3, ge=0, le=20)
    backoff_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    credentials: dict[str, Any] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{redact_url(value)[:200]!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("the URL must not hold user info; declare credentials with environment variables")
        return value.rstrip("/")

    @field_validator("assets")
    @classmethod
    def _check_band_names(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for band in value:
            problem = name_problem(band)
            if problem is not None:
                raise ValueError(f"band {quoted(band)} cannot be a file name: it {problem}")
        return value

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy these options describe."""
        return RetryPolicy(
            attempts=self.retries + 1,
            backoff_s=self.backoff_s,
            backoff_max_s=self.backoff_max_s,
            read_timeout_s=self.timeout_s,
            connect_timeout_s=self.connect_timeout_s,
        )


def parse_stac_options(options: Mapping[str, Any], where: str) -> StacOptions:
    """Validate ``stac`` provider options.

    Returns:
        The :class:`StacOptions`.

    Raises:
        ProviderError: naming ``where`` and the first bad option (credentials problems are
            reported without their values).
    """
    try:
        parsed = StacOptions.model_validate(dict(options))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "options"
        raise ProviderError(f"{where}: option {field}: {first['msg']}") from None
    check_credentials_spec(parsed.credentials, where)
    return parsed


def build_stac_provider(
    name: str, options: Mapping[str, Any], environ: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep
) -> StacProvider:
    """Build a :class:`StacProvider` from its options, resolving credentials from ``environ``.

    Returns:
        The provider (no request is made yet).

    Raises:
        ProviderError: if an option is invalid, a credentials variable is not set, or the
            provider has credentials for its own host but its URL is not https (nor http to a
            loopback host with ``allow_insecure_loopback``).
    """
    parsed = parse_stac_options(options, f"provider {name}")
    credentials = credentials_from_spec(
        parsed.credentials, environ, f"provider {name}", default_host=urlsplit(parsed.url).hostname
    )
    if credentials is not None and credentials.applies_to(parsed.url):
        credentials.check_transport(parsed.url, f"provider {name}: option url")
    return StacProvider(name, parsed, credentials, sleep=sleep)


def _scene_datetime(properties: Mapping[str, Any], where: str) -> datetime:
    value = properties.get("datetime") or properties.get("start_datetime")
    if not value:
        raise ProviderError(f"{where}: Item has no datetime")
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ProviderError(f"{where}: Item datetime {value!r} is not ISO 8601") from None
    if when.tzinfo is None:
        raise ProviderError(f"{where}: Item datetime {value!r} has no timezone")
    return when


def _asset_band_names(asset: Mapping[str, Any]) -> list[str]:
    bands = asset.get("eo:bands") or asset.get("bands") or []
    if not isinstance(bands, list) or len(bands) != 1 or not isinstance(bands[0], Mapping):
        return []
    name = bands[0].get("name")
    return [name] if isinstance(name, str) else []


class StacProvider(Provider):
    """Scenes from a STAC API; bands downloaded one asset at a time (a :class:`~cube_assets.providers.
    raw_store.BandSource`)."""

    def __init__(
        self,
        name: str,
        options: StacOptions,
        credentials: Credentials | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.options = options
        self.http = HttpClient(name, credentials, options.retry, sleep=sleep)
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StacProvider(name={self.name!r}, url={redact_url(self.options.url)!r})"

    def close(self) -> None:
        """Release the HTTP connections."""
        self.http.close()

    # -- search --------------------------------------------------------------------------------

    def _open(self) -> Any:
        from pystac_client import Client
        from pystac_client.stac_api_io import StacApiIO

        with self._lock:
            if self._client is None:
                stac_io = StacApiIO(timeout=self.options.retry.timeout, max_retries=None)
                stac_io.session = self.http.api_session
                self._client = Client.open(self.options.url, stac_io=stac_io)
            return self._client

    def _cloud_cover_arguments(self, client: Any, max_cloud_cover: float | None) -> dict[str, Any]:
        from pystac_client.conformance import ConformanceClasses

        mode = self.options.cloud_cover_filter
        if max_cloud_cover is None or mode == "none":
            return {}
        if mode == "auto":
            if client.conforms_to(ConformanceClasses.FILTER):
                mode = "cql2-json"
            elif client.conforms_to(ConformanceClasses.QUERY):
                mode = "query"
            else:
                return {}
        if mode == "cql2-json":
            return {
                "filter": {"op": "<=", "args": [{"property": CLOUD_COVER}, max_cloud_cover]},
                "filter_lang": "cql2-json",
            }
        return {"query": {CLOUD_COVER: {"lte": max_cloud_cover}}}

    def search_items(
        self,
        collection: str,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        max_cloud_cover: float | None = None,
    ) -> list[dict[str, Any]]:
        """The raw Items the API returns for the search, every page followed.

        Returns:
            The Items as dicts, in the API's order.

        Raises:
            ProviderError: naming the provider and the (redacted) URL, if the API cannot be
                reached, answers with an error after the retries, or is not a STAC API with
                item search. Any exception of the client library is converted, so that a
                provider chain can fall through.
        """
        api_collection = self.options.collections.get(collection, collection)
        where = f"{self.name}: search {api_collection} at {redact_url(self.options.url)}"
        try:
            client = self._open()
            search = client.search(
                collections=[api_collection],
                intersects=mapping(geometry),
                datetime=[start, end],
                limit=self.options.page_size,
                max_items=self.options.max_items,
                **self._cloud_cover_arguments(client, max_cloud_cover),
            )
            return list(search.items_as_dicts())
        except ProviderError:
            raise
        except Exception as exc:  # pystac-client raises many types; all mean "this provider failed"
            message = redact_urls_in_text(" ".join(str(exc).split()))[:300]
            raise ProviderError(f"{where} failed: {type(exc).__name__}: {message}") from None

    def search(
        self,
        collection: str,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        max_cloud_cover: float | None = None,
    ) -> list[SceneRef]:
        """Scenes of ``collection`` over ``geometry`` with ``start <= datetime < end``.

        Returns:
            Matching scenes sorted by datetime, then scene id; a scene's ``properties`` hold
            the Item (``stac_item``) and its scalar properties. Items of another collection
            and the common rules (window, footprint, cloud cover) are filtered here again,
            because APIs may ignore parameters they do not support (the recorded Earth Search
            answers ignore a CQL2 filter).

        Raises:
            ProviderError: if the arguments are invalid or the search fails (see
                :meth:`search_items`), or an Item has no usable datetime or geometry.
        """
        check_search_arguments(geometry, start, end, f"{self.name} search {collection}")
        items = self.search_items(collection, geometry, start, end, max_cloud_cover)
        api_collection = self.options.collections.get(collection, collection)
        scenes = {}
        for item in items:
            if item.get("collection") not in (None, api_collection):
                continue  # an API that ignores the collections parameter
            scene = self.scene_from_item(item, collection)
            scenes.setdefault(scene.scene_id, scene)
        return select_scenes(
            scenes.values(),
            collection=collection,
            geometry=geometry,
            start=start,
            end=end,
            max_cloud_cover=max_cloud_cover,
        )

    def scene_from_item(self, item: Mapping[str, Any], collection: str) -> SceneRef:
        """Turn a STAC Item (a dict) into a :class:`SceneRef` of ``collection``.

        Raises:
            ProviderError: naming the provider and the Item, if it has no id, datetime or
                geometry, or if its id (or the ``scene_id_property`` value) cannot be a folder
                name under the rule of :mod:`cube_assets.names` (``..``, ``/``, ``\\``,
                control characters, over 255 bytes…): scene ids become folder names.
        """
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise ProviderError(f"{self.name}: an Item has no id")
        check_name(item_id, f"{self.name}: Item id")
        where = f"{self.name}: Item {item_id}"
        properties = item.get("properties") or {}
        scene_id = item_id
        if self.options.scene_id_property:
            value = properties.get(self.options.scene_id_property)
            if isinstance(value, str) and value:
                scene_id = check_name(value.removesuffix(".SAFE"), f"{where}: {self.options.scene_id_property}")
        if item.get("geometry"):
            try:
                footprint = shape(item["geometry"])
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise ProviderError(f"{where}: geometry is not GeoJSON ({exc})") from None
        elif item.get("bbox"):
            footprint = box(*item["bbox"][:2], *item["bbox"][-2:])
        else:
            raise ProviderError(f"{where}: Item has no geometry")
        cloud_cover = properties.get(CLOUD_COVER)
        self_href = next(
            (link.get("href") for link in item.get("links", []) if link.get("rel") == "self"),
            f"{self.options.url}/collections/{item.get('collection', collection)}/items/{item_id}",
        )
        scalars = {
            key: value
            for key, value in properties.items()
            if key not in _SCENE_PROPERTY_EXCLUDES and (isinstance(value, str | int | float | bool) or value is None)
        }
        return SceneRef(
            provider=self.name,
            collection=collection,
            scene_id=scene_id,
            datetime=_scene_datetime(properties, where),
            footprint=footprint,
            cloud_cover=float(cloud_cover) if isinstance(cloud_cover, int | float) else None,
            href=self_href,
            properties={
                **scalars,
                "format": "STAC",
                "stac_item_id": item_id,
                "stac_collection": item.get("collection"),
                "stac_item": dict(item),
            },
        )

    # -- bands ---------------------------------------------------------------------------------

    def band_files(self, scene: SceneRef) -> dict[str, RemoteFile]:
        """The file of every band this provider can deliver for ``scene`` (see the module docstring).

        Returns:
            Band name → :class:`~cube_assets.providers.http.RemoteFile`; bands named in the
            ``assets`` option first, then every asset key that can be a file name, then
            single-band ``eo:bands`` names that can, then the usual names of Sentinel-2 and
            Landsat bands whose asset is keyed otherwise.

        Raises:
            ProviderError: if ``scene`` is not from this provider.
        """
        if scene.provider != self.name:
            raise ProviderError(f"{self.name}: scene {scene.scene_id} belongs to provider {scene.provider!r}")
        item = scene.properties.get("stac_item") or {}
        assets: Mapping[str, Mapping[str, Any]] = item.get("assets") or {}
        base = scene.href
        files: dict[str, RemoteFile] = {}
        for band, keys in self.options.assets.items():
            for key in [keys] if isinstance(keys, str) else keys:
                if key in assets:
                    files[band] = self._remote(assets[key], base, key)
                    break
        for key, asset in assets.items():
            if name_problem(key) is None:  # an asset key that cannot be a file name is never a band name
                files.setdefault(key, self._remote(asset, base, key))
        by_type = sorted(assets.items(), key=lambda kv: "tiff" not in str(kv[1].get("type", "")))
        for key, asset in by_type:
            for band in _asset_band_names(asset):
                if name_problem(band) is None:
                    files.setdefault(band, self._remote(asset, base, key))
        for band in _USUAL_BAND_NAMES:
            if band not in files:
                key = asset_key_for_band(item, band)
                if key is not None:
                    files[band] = self._remote(assets[key], base, key)
        return files

    def _remote(self, asset: Mapping[str, Any], base: str, key: str | None = None) -> RemoteFile:
        chosen = asset
        if self.options.alternate:
            alternate = (asset.get("alternate") or {}).get(self.options.alternate)
            if isinstance(alternate, Mapping) and alternate.get("href"):
                chosen = alternate
        href = urljoin(base, str(chosen["href"]))
        size = chosen.get("file:size", asset.get("file:size"))
        checksum = chosen.get("file:checksum", asset.get("file:checksum"))
        return RemoteFile(
            href=href,
            size=int(size) if isinstance(size, int | float) and not isinstance(size, bool) else None,
            checksum=checksum if isinstance(checksum, str) and checksum else None,
            media_type=asset.get("type"),
            asset=key,
        )

    def fetch_band(self, scene: SceneRef, band: str, destination: Path) -> DownloadResult:
        """Download ``band`` of ``scene`` to ``destination`` (verified; see ``HttpClient.download``).

        Returns:
            The :class:`~cube_assets.providers.http.DownloadResult`.

        Raises:
            ProviderError: if the scene has no file for ``band`` or the download fails.
        """
        files = self.band_files(scene)
        if band not in files:
            raise ProviderError(
                f"{self.name}: scene {scene.scene_id} has no asset for band {band} (it has {sorted(files)})"
            )
        return self.http.download(files[band], destination)

    def fetch(self, scene: SceneRef, destination_dir: Path) -> Path:
        """Download the bands named in the ``assets`` option (else every asset with the ``data``
        role) of ``scene`` into ``destination_dir/{scene id}`` as a COG-per-band product.

        The scene id and the band names (asset keys, without the ``assets`` option) are checked
        with the name rule of :mod:`cube_assets.names` before anything is written, so that every
        file lands inside ``destination_dir/{scene id}``.

        Returns:
            The product folder.

        Raises:
            ProviderError: naming the provider and the Item, if the scene id or an asset key
                cannot be a file or folder name; if a download fails or a file is corrupt.
        """
        from cube_assets.providers.raw_store import load_bands_into

        item = scene.properties.get("stac_item") or {}
        where = f"{self.name}: Item {quoted(scene.properties.get('stac_item_id', scene.scene_id))}"
        check_name(scene.scene_id, f"{where}: scene id")
        bands = list(self.options.assets) or [
            key for key, asset in (item.get("assets") or {}).items() if "data" in (asset.get("roles") or [])
        ]
        if not bands:
            raise ProviderError(f"{where}: scene {scene.scene_id}: no band to fetch (set the 'assets' option)")
        for band in bands:
            check_name(band, f"{where}: asset key")
        return load_bands_into(Path(destination_dir) / scene.scene_id, scene, bands, self).path
