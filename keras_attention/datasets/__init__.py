"""Offline, seeded data sets for the examples and tests."""

from keras_attention.datasets import dates
from keras_attention.datasets.sequences import copy_reverse
from keras_attention.datasets.sequences import sorting
from keras_attention.datasets.stations import weather_field
from keras_attention.datasets.stations import weather_stations
from keras_attention.datasets.translation import load_tsv_pairs
from keras_attention.datasets.translation import toy_translation
