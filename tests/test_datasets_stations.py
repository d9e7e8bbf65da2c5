import numpy as np
import pytest

from keras_attention.datasets.stations import weather_field
from keras_attention.datasets.stations import weather_stations

pytestmark = pytest.mark.backend_neutral  # see conftest.py


def test_weather_stations_is_seeded_and_shaped():
    a = weather_stations(num_stations=7, num_queries=11, seed=3)
    b = weather_stations(num_stations=7, num_queries=11, seed=3)
    for key, shape in [
        ("station_coords", (7, 2)),
        ("station_values", (7, 2)),
        ("query_coords", (11, 2)),
        ("query_values", (11, 2)),
    ]:
        assert a[key].shape == shape and a[key].dtype == np.float32
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_allclose(
        a["query_values"], weather_field(a["query_coords"]), rtol=1e-6
    )


def test_station_noise_is_measurement_noise():
    data = weather_stations(num_stations=500, noise=0.5, seed=1)
    residual = data["station_values"] - weather_field(data["station_coords"])
    assert 0.4 < residual.std() < 0.6


def test_weather_stations_rejects_empty():
    with pytest.raises(ValueError, match="num_stations"):
        weather_stations(num_stations=0)
