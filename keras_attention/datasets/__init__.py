"""Offline, seeded data sets for the examples and tests."""

from keras_attention.datasets.stations import weather_field
from keras_attention.datasets.stations import weather_stations
