import matplotlib.image
import pytest

from tests.testing import load_example


@pytest.mark.slow
def test_weather_stations_quick_run_beats_nearest_station(tmp_path):
    results = load_example("weather_stations").main(
        ["--quick", "--out", str(tmp_path)]
    )
    nearest = results["nearest station"]
    assert (results["gaussian, learned σ"] < nearest).all()
    for name in ["weather_field.png", "bandwidth.png"]:
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[0] > 300 and image.shape[1] > 500
