"""Hardware behind small interfaces: camera, decoder, front panel (LED, buzzer, button).

``factory.py`` is the one place that opens them (and the display): the ``pi`` backend's
real devices or the ``sim`` backend's recording fakes, chosen by ``[hardware] backend``
and imported only when chosen, as gpiozero does with pin factories.
"""
