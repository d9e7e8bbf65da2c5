"""Weather stations: the lecture notes' analogy for attention, as data.

Stations sit at map coordinates (the keys) and report measurements (the
values); we want the weather at new locations (the queries). The weather is a
smooth, known field, so an estimate can be scored against the truth.
"""

import numpy as np


def weather_field(coords):
    """The true weather at `coords`: temperature (°C) and humidity (%).

    Args:
        coords: float array `(..., 2)` of map coordinates in `[0, 1]²`.

    Returns:
        float32 array `(..., 2)`.
    """
    x, y = coords[..., 0], coords[..., 1]
    temperature = 24 + 6 * np.sin(3 * x) * np.cos(2 * y) + 4 * y
    humidity = 55 + 15 * np.cos(2.5 * x + 1.5 * y) - 10 * x * y
    return np.stack([temperature, humidity], axis=-1).astype("float32")


def weather_stations(num_stations=40, num_queries=1000, noise=0.5, seed=0):
    """Generate stations, their noisy measurements, and query locations.

    Args:
        num_stations: number of stations `J` (the keys). Defaults to `40`.
        num_queries: number of query locations. Defaults to `1000`.
        noise: standard deviation of the stations' measurement noise.
            Defaults to `0.5`.
        seed: random seed. Defaults to `0`.

    Returns:
        dict of float32 arrays: `station_coords (J, 2)`,
        `station_values (J, 2)`, `query_coords (N, 2)` and the true
        `query_values (N, 2)` at the queries.

    Examples:
        >>> data = weather_stations(num_stations=5, num_queries=3)
        >>> data["station_values"].shape, data["query_coords"].shape
        ((5, 2), (3, 2))
    """
    if num_stations < 1 or num_queries < 1:
        raise ValueError(
            "`num_stations` and `num_queries` must be positive. Received: "
            f"{num_stations=}, {num_queries=}"
        )
    rng = np.random.default_rng(seed)
    stations = rng.random((num_stations, 2)).astype("float32")
    measured = weather_field(stations) + rng.normal(
        scale=noise, size=(num_stations, 2)
    )
    queries = rng.random((num_queries, 2)).astype("float32")
    return {
        "station_coords": stations,
        "station_values": measured.astype("float32"),
        "query_coords": queries,
        "query_values": weather_field(queries),
    }
