"""Parses Prometheus text (standard input) with the Prometheus Python client's parser, and prints
each sample as a JSON line: [name, labels, value]. Fails on text the parser refuses."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps([sample.name, sample.labels, sample.value]))
