//! A faithful, adversarial fake of the payment system: an in-process `Transport` and an HTTP server, with its own books, callbacks and fault injection. (Arrives with the simulator issue.)
