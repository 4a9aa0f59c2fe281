"""A tensorflow-datasets source, prepared on first use, or one line that says why it cannot be.

tensorflow-datasets downloads a dataset's files, checks them against the
checksums it ships, and writes the prepared dataset under its data_dir
(`--data_dir`, default ~/tensorflow_datasets), which later runs read.
Three things stop it, and each becomes a DatasetError saying how to go on:

- Its download hosts cannot be reached (no network). tensorflow-datasets
  would retry for minutes and end in a traceback; a short probe of the
  hosts first (PROBE_SECONDS at most) fails at once instead.
- The dataset's files must be fetched by hand (celeba, imagenet32 and
  imagenet64: their hosts no longer serve them to a program). The files
  go into the manual folder, `<data_dir>/downloads/manual/`, where
  tensorflow-datasets finds them (by the names in its checksums) and
  checks them. Any dataset's downloads can be put there the same way.
- The download or its preparation fails (a checksum that differs, a host
  that answers with an error).
"""

import os
import socket
import threading
import time
import urllib.parse
import urllib.request

from glow_tf import phases
from glow_tf.datasets import DatasetError

PROBE_SECONDS = 10


def prepared(dataset, source, data_dir=None):
    """The tensorflow-datasets builder of `source`, its data prepared; DatasetError if it cannot be.

    Args:
        dataset: the name in our catalogue ("cifar10"), for the messages.
        source: its `glow_tf.datasets.Source`.
        data_dir: tensorflow-datasets' data_dir (None: its default).
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(source.tfds_name, data_dir=data_dir)
    if is_prepared(builder):
        phases.report(f"Reading {dataset} from {builder.data_dir} (tensorflow-datasets) ...")
        return builder
    manual_dir = os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")
    downloads = dict(type(builder).url_infos or {})  # url -> UrlInfo(size, checksum, filename)
    missing = {url: info for url, info in downloads.items()
               if not (info.filename and os.path.isfile(os.path.join(manual_dir, info.filename)))}
    if source.manual and missing:
        raise DatasetError(
            f"{dataset} needs files fetched by hand: put {_files(missing)} in {manual_dir} "
            "(tensorflow-datasets checks them against its checksums), then run the same "
            f"command again; or train on a folder of images with --dataset folder --data_dir DIR."
        )
    unreachable = _unreachable(missing)
    if unreachable:
        host, reason = unreachable
        raise DatasetError(
            f"{dataset} could not be fetched: {host} cannot be reached ({reason}). To go on "
            f"offline: put its download{'s' if len(missing) > 1 else ''} {_files(missing)} in "
            f"{manual_dir}, or a copy of tensorflow-datasets' prepared {builder.info.full_name} "
            f"(from a machine online: tfds build {source.tfds_name.split('/')[0]}) in "
            f"{builder.data_dir}; or train on a folder of images with --dataset folder "
            "--data_dir DIR."
        )
    size = sum(int(info.size) for info in downloads.values())
    phases.report(
        f"Downloading and preparing {dataset} into {builder.data_dir} (first use"
        + (f"; {size / 2**20:,.0f} MiB to download" if missing and size else "") + ") ..."
    )
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except _failures() as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DatasetError(
            f"{dataset} could not be prepared ({type(error).__name__}: {first_line}); "
            "the same command tries again. Or train on a folder of images with --dataset "
            "folder --data_dir DIR."
        ) from None
    return builder


def is_prepared(builder):
    """Whether the builder's data are prepared (without the warning is_prepared logs for none)."""
    return os.path.isdir(builder.data_dir) and builder.is_prepared()


def _files(url_infos):
    """'a.tar (https://host/a.tar, 162 MB), ...': what to fetch, and from where."""
    return ", ".join(
        f"{info.filename or os.path.basename(urllib.parse.urlparse(url).path)} ({url}, "
        f"{int(info.size) / 1e6:,.0f} MB)"
        for url, info in sorted(url_infos.items(), key=lambda item: item[1].filename or "")
    )


def _failures():
    import requests
    from tensorflow_datasets.core.download import download_manager, util

    return (OSError, requests.exceptions.RequestException, util.DownloadError,
            download_manager.NonMatchingChecksumError)


def _unreachable(urls):
    """(host, reason) of a host of `urls` that no connection reaches; None if all answer.

    Each host (or the proxy the environment names for it) gets one TCP
    connection, all at once, and PROBE_SECONDS at most; a name lookup
    that hangs counts as no answer.
    """
    endpoints = {}
    proxies = urllib.request.getproxies()
    for url in urls:
        parts = urllib.parse.urlparse(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        target = parts
        proxy = proxies.get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.hostname):
            target = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        port = target.port or (443 if target.scheme == "https" else 80)
        endpoints[(target.hostname, port)] = parts.hostname
    results = {}

    def probe(endpoint):
        try:
            socket.create_connection(endpoint, timeout=PROBE_SECONDS).close()
            results[endpoint] = None
        except OSError as error:
            results[endpoint] = error.strerror or str(error) or type(error).__name__

    threads = [threading.Thread(target=probe, args=(e,), daemon=True) for e in endpoints]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + PROBE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for endpoint, host in endpoints.items():
        reason = results.get(endpoint, f"no answer within {PROBE_SECONDS} s")
        if reason is not None:
            shown = host if endpoint[0] == host else f"{host} (through the proxy {endpoint[0]})"
            return shown, reason
    return None
