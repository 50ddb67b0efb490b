"""Hardware behind small interfaces: camera, decoder, front panel (LED, buzzer, button).

Each interface has its real backend first and a simulated one beside it, chosen by
configuration and imported only when chosen (as gpiozero does with pin factories).
"""
