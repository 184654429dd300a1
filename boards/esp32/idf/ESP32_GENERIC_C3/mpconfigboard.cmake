# The stock ESP32_GENERIC_C3 board (ports/esp32/boards/ESP32_GENERIC_C3, paths relative to
# ports/esp32), with the meter's partition table and rollback (../meter.cmake).
include(boards/ESP32_GENERIC_C3/mpconfigboard.cmake)
include(${MICROPY_BOARD_DIR}/../meter.cmake)
