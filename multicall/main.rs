//! `repave`: check, in and out in one binary, chosen by the name it is started as. The image links
//! `/opt/resource/{in,out}` to `/opt/resource/check` so one static binary serves all three.

fn main() {
    repave::multicall_main();
}
