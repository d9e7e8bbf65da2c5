"""Weather stations: attention as kernel regression.

The lecture notes' analogy made real. Stations on a map are the keys (their
coordinates) and values (their measurements); a new location is the query.
Attention estimates the weather there as a weighted average of the stations'
measurements, with weights from a distance score:

- inverse distance, `e_j = 1 / ‖q − k_j‖` (the notes' formula, no training);
- inverse distance with a learned scale `σ / ‖q − k_j‖`;
- Gaussian, `e_j = −‖q − k_j‖² / 2σ²` with a learned bandwidth `σ`
  (Nadaraya–Watson kernel regression).

Each is compared with the nearest-station baseline on held-out locations.
Writes `weather_field.png` (the field, the stations and one query's attention
weights) and `bandwidth.png` (error vs bandwidth, with the learned one) to
`--out`.

    python examples/weather_stations.py [--quick] [--out DIR]
"""

import argparse
import os

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import matplotlib
import numpy as np

import keras_attention as ka
from keras_attention.datasets.stations import weather_field
from keras_attention.datasets.stations import weather_stations

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402


def build_model(score, num_stations):
    """query (B, 1, 2), station coords and values (B, J, 2) -> (B, 2)."""
    query = keras.Input((1, 2), name="query")
    coords = keras.Input((num_stations, 2), name="station_coords")
    values = keras.Input((num_stations, 2), name="station_values")
    estimate = ka.Attention(score=score, name="attention")(
        query, values, key=coords
    )  # (B, 1, 2)
    estimate = keras.layers.Reshape((2,))(estimate)
    return keras.Model([query, coords, values], estimate)


def model_inputs(data, queries):
    n = len(queries)
    tile = lambda a: np.repeat(a[None], n, axis=0)  # noqa: E731
    return [
        queries[:, None],
        tile(data["station_coords"]),
        tile(data["station_values"]),
    ]


def nearest_station(data, queries):
    distance = np.linalg.norm(
        queries[:, None] - data["station_coords"][None], axis=-1
    )
    return data["station_values"][distance.argmin(-1)]


def fit_score(score, data, train_queries, epochs):
    model = build_model(score, len(data["station_coords"]))
    if model.trainable_weights:
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mae")
        model.fit(
            model_inputs(data, train_queries),
            weather_field(train_queries),
            batch_size=64,
            epochs=epochs,
            verbose=1,
        )
    return model


def bandwidth_of(model):
    score = model.get_layer("attention").score
    return float(np.exp(np.asarray(score.log_bandwidth)))


def gaussian_error(data, queries, bandwidth):
    """Nadaraya–Watson in NumPy: the error curve for `bandwidth.png`."""
    d2 = ((queries[:, None] - data["station_coords"][None]) ** 2).sum(-1)
    logits = -d2 / (2 * bandwidth**2)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    estimate = w @ data["station_values"]
    return np.abs(estimate - weather_field(queries)).mean()


def plot_field(data, model, query, path):
    grid = np.linspace(0, 1, 60, dtype="float32")
    xx, yy = np.meshgrid(grid, grid)
    cells = np.stack([xx.ravel(), yy.ravel()], -1)
    truth = weather_field(cells)[:, 0].reshape(xx.shape)
    estimate = model.predict(model_inputs(data, cells), verbose=0)
    estimate = estimate[:, 0].reshape(xx.shape)
    attention = model.get_layer("attention")
    q, coords, values = model_inputs(data, query[None])
    _, weights = attention(q, values, key=coords, return_attention_scores=True)
    weights = np.asarray(weights)[0, 0]  # (J,)

    stations = data["station_coords"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
    for ax, field, title in [
        (axes[0], truth, "True temperature, one query's attention weights"),
        (axes[1], estimate, "Attention estimate (Gaussian, learned σ)"),
    ]:
        image = ax.imshow(
            field, origin="lower", extent=(0, 1, 0, 1), cmap="coolwarm"
        )
        ax.set_title(title)
        ax.set_xlabel("x (map coordinate)")
        ax.set_ylabel("y (map coordinate)")
        fig.colorbar(image, ax=ax, label="temperature (°C)")
    axes[0].scatter(
        stations[:, 0],
        stations[:, 1],
        s=20 + 600 * weights / weights.max(),
        facecolors="none",
        edgecolors="black",
        label="station (size = attention weight)",
    )
    for j in np.argsort(weights)[-3:]:
        axes[0].annotate(
            f"α={weights[j]:.2f}",
            stations[j],
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=9,
        )
    axes[0].scatter(
        *query,
        marker="*",
        s=250,
        c="gold",
        edgecolors="black",
        label="query location",
    )
    axes[0].legend(loc="lower left", fontsize=8)
    axes[1].scatter(
        stations[:, 0], stations[:, 1], c="black", s=10, label="station"
    )
    axes[1].legend(loc="lower left", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bandwidth(data, queries, learned, path):
    bandwidths = np.geomspace(0.01, 1.0, 60)
    errors = [gaussian_error(data, queries, b) for b in bandwidths]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    ax.plot(bandwidths, errors, label="Gaussian attention")
    ax.axvline(learned, color="C1", ls="--", label=f"learned σ = {learned:.3f}")
    ax.axhline(
        np.abs(nearest_station(data, queries) - weather_field(queries)).mean(),
        color="C2",
        ls=":",
        label="nearest station",
    )
    ax.set_xscale("log")
    ax.set_xlabel("bandwidth σ (map units)")
    ax.set_ylabel("mean absolute error (held-out locations)")
    ax.set_title("Too narrow = nearest station, too wide = map average")
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/weather_stations")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    os.makedirs(args.out, exist_ok=True)
    epochs = 3 if args.quick else 15

    data = weather_stations(num_stations=40, num_queries=3000, seed=0)
    train, test = data["query_coords"][:2000], data["query_coords"][2000:]
    truth = data["query_values"][2000:]

    def mae(estimate):
        return np.abs(estimate - truth).mean(axis=0)  # (temperature, humidity)

    results = {"nearest station": mae(nearest_station(data, test))}
    scores = {
        "inverse distance (σ=1)": ka.scores.Distance("inverse"),
        "inverse distance, learned σ": ka.scores.Distance(
            "inverse", learn_bandwidth=True
        ),
        "gaussian, learned σ": ka.scores.Distance(
            "gaussian", bandwidth=0.3, learn_bandwidth=True
        ),
    }
    models = {}
    for name, score in scores.items():
        print(f"\n== {name}")
        models[name] = fit_score(score, data, train, epochs)
        estimate = models[name].predict(model_inputs(data, test), verbose=0)
        results[name] = mae(estimate)

    gaussian = models["gaussian, learned σ"]
    print("\nmean absolute error on 1000 held-out locations")
    print(f"{'method':32s} {'temp (°C)':>10s} {'humidity (%)':>13s}")
    for name, (temp, humid) in results.items():
        print(f"{name:32s} {temp:10.3f} {humid:13.3f}")
    print(f"learned Gaussian bandwidth σ = {bandwidth_of(gaussian):.3f}")

    plot_field(
        data, gaussian, test[0], os.path.join(args.out, "weather_field.png")
    )
    plot_bandwidth(
        data,
        test,
        bandwidth_of(gaussian),
        os.path.join(args.out, "bandwidth.png"),
    )
    gaussian.save(os.path.join(args.out, "weather_gaussian.keras"))
    print(f"plots and model written to {args.out}")
    return results


if __name__ == "__main__":
    main()
