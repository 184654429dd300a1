// The stock ESP32_GENERIC_C3 board's settings (its mpconfigboard.h), for the meter build.
#define MICROPY_HW_BOARD_NAME               "Water meter, ESP32C3 module (OTA)"
#define MICROPY_HW_MCU_NAME                 "ESP32C3"
// the DevKitM-1 has a USB-UART bridge: the REPL on the UART
#define MICROPY_HW_ENABLE_UART_REPL         (1)
