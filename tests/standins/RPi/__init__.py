"""Stand-in for the RPi package (RPi.GPIO lives in RPi/GPIO.py)."""
