# The stock ESP32_GENERIC board (ports/esp32/boards/ESP32_GENERIC, paths relative to
# ports/esp32), with the meter's partition table and rollback (../meter.cmake).
include(boards/ESP32_GENERIC/mpconfigboard.cmake)
include(${MICROPY_BOARD_DIR}/../meter.cmake)
