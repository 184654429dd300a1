// The stock ESP32_GENERIC_S3 board's settings (its mpconfigboard.h), for the meter build.
#define MICROPY_HW_BOARD_NAME               "Water meter, ESP32S3 module (OTA)"
#define MICROPY_HW_MCU_NAME                 "ESP32S3"
// the DevKitC-1 has a USB-UART bridge: the REPL on the UART
#define MICROPY_HW_ENABLE_UART_REPL         (1)
#define MICROPY_HW_I2C0_SCL                 (9)
#define MICROPY_HW_I2C0_SDA                 (8)
