"""The 128x64 OLED: a luma device (real or dummy) and screens drawn with PIL."""
