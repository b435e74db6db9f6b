//! A WASI command, not a `wrt:transform/transformer`.

fn main() {
    println!("I am not a transform");
}
