// The stock ESP32_GENERIC board's names (its mpconfigboard.h), for the meter build.
#define MICROPY_HW_BOARD_NAME "Water meter, ESP32 module (OTA)"
#define MICROPY_HW_MCU_NAME "ESP32"
