"""Reading the plugin's metrics as Prometheus scrapes them, in end-to-end tests."""


def scrape(orthanc, path="/tools/metrics-prometheus") -> dict[str, float]:
    """The plugin's samples of a Prometheus page: {'name{labels}': value}."""
    samples = {}
    for line in orthanc.get(path).decode().splitlines():
        if line.startswith("orthanc_objstore_"):
            name, value = line.split()[:2]
            samples[name] = float(value)
    return samples
