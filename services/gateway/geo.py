"""Kindergartens near the parent's address: distances and a small map drawn
as inline SVG, so no external tile server is needed."""
from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_000


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def nearest(kindergartens: list[dict], lat: float | None, lon: float | None, limit: int = 10,
            within_m: float = 30_000) -> list[dict]:
    """Kindergartens with coordinates within `within_m`, nearest first, each
    with `distance_m`."""
    if lat is None or lon is None:
        return []
    out = [{**k, "distance_m": round(distance_m(lat, lon, float(k["lat"]), float(k["lon"])))}
           for k in kindergartens if k.get("lat") is not None and k.get("lon") is not None]
    out = [k for k in out if k["distance_m"] <= within_m]
    out.sort(key=lambda k: (k["distance_m"], str(k.get("id"))))
    return out[:limit]


@dataclass(frozen=True)
class MapPoint:
    x: float
    y: float
    label: str
    number: int


def project(home: tuple[float, float], points: list[dict], size: int = 320, pad: int = 24):
    """Local equirectangular projection centred on home; returns the home
    point, the kindergarten points and the metres-per-pixel scale."""
    lat0, lon0 = home
    kx = math.cos(math.radians(lat0)) * 111_320
    ky = 110_540
    xy = [((float(p["lon"]) - lon0) * kx, (float(p["lat"]) - lat0) * ky) for p in points]
    extent = max([abs(c) for pt in xy for c in pt] + [500.0])
    scale = extent / (size / 2 - pad)         # metres per pixel
    centre = size / 2
    placed = [MapPoint(round(centre + x / scale, 1), round(centre - y / scale, 1), str(p.get("name", "")), i + 1)
              for i, ((x, y), p) in enumerate(zip(xy, points))]
    return MapPoint(centre, centre, "", 0), placed, scale


def ring_radii(scale: float, size: int = 320) -> list[tuple[int, float]]:
    """Distance rings (metres, pixel radius) that fit on the map."""
    out = []
    for metres in (500, 1000, 2000, 5000, 10000, 20000):
        r = metres / scale
        if 12 < r < size / 2:
            out.append((metres, round(r, 1)))
    return out[:3]
