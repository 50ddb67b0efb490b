"""Tests start private brokers with the product's own runner (cloud/devbroker.py)."""

from cloud.devbroker import Mosquitto, free_port, mosquitto_binary

__all__ = ["Mosquitto", "free_port", "mosquitto_binary"]
