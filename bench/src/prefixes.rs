//! Carrier-like lists: dynamic pools of /16../24 (IPv4) and /36../48
//! (IPv6), exemptions mostly single hosts and small business blocks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use op25b_agent::policy::prefix::{Prefix, PrefixSet};
use rand::{rngs::StdRng, Rng};

fn v4(rng: &mut StdRng, lens: &[(u8, u32)]) -> Prefix {
    let len = pick(rng, lens);
    // Anywhere: a carrier's pools span its public space (map contents only, never a target).
    let raw = rng.gen::<u32>();
    let mask = u32::MAX << (32 - u32::from(len));
    Prefix::new(IpAddr::V4(Ipv4Addr::from(raw & mask)), len).expect("masked")
}

fn v6(rng: &mut StdRng, lens: &[(u8, u32)]) -> Prefix {
    let len = pick(rng, lens);
    // Anywhere in 2000::/3: 2001:db8::/32 holds too few /36../48 pools for a million.
    let raw = (0x2_u128 << 124) | (rng.gen::<u128>() >> 3);
    let mask = u128::MAX << (128 - u32::from(len));
    Prefix::new(IpAddr::V6(Ipv6Addr::from(raw & mask)), len).expect("masked")
}

fn pick(rng: &mut StdRng, weighted: &[(u8, u32)]) -> u8 {
    let total: u32 = weighted.iter().map(|w| w.1).sum();
    let mut at = rng.gen_range(0..total);
    for &(len, w) in weighted {
        if at < w {
            return len;
        }
        at -= w;
    }
    weighted[0].0
}

const DYNAMIC_V4: &[(u8, u32)] = &[(16, 2), (18, 3), (20, 10), (22, 25), (23, 20), (24, 40)];
const DYNAMIC_V6: &[(u8, u32)] = &[(36, 5), (40, 15), (44, 30), (48, 50)];
const EXEMPT_V4: &[(u8, u32)] = &[(32, 85), (30, 5), (29, 7), (28, 3)];
const EXEMPT_V6: &[(u8, u32)] = &[(128, 30), (64, 30), (56, 40)];

/// `n` distinct prefixes, half IPv4 and half IPv6.
pub fn list(rng: &mut StdRng, n: usize, dynamic: bool) -> PrefixSet {
    let (l4, l6) = if dynamic {
        (DYNAMIC_V4, DYNAMIC_V6)
    } else {
        (EXEMPT_V4, EXEMPT_V6)
    };
    let mut set = PrefixSet::default();

    while set.v4.len() < n / 2 {
        set.insert(v4(rng, l4));
    }
    while set.v6.len() < n - n / 2 {
        set.insert(v6(rng, l6));
    }
    // As a list file is read.
    set.compact();
    set
}

/// `n` distinct IPv4 prefixes (carrier-like lengths).
pub fn list_v4(rng: &mut StdRng, n: usize, dynamic: bool) -> PrefixSet {
    let lens = if dynamic { DYNAMIC_V4 } else { EXEMPT_V4 };
    let mut set = PrefixSet::default();
    while set.v4.len() < n {
        set.insert(v4(rng, lens));
    }
    set.compact();
    set
}

/// A random host inside a random prefix of `set`'s IPv4 half.
pub fn host_in(rng: &mut StdRng, set: &PrefixSet) -> Ipv4Addr {
    let index = rng.gen_range(0..set.v4.len());
    let prefix = set.v4.iter().nth(index).expect("in range");
    let IpAddr::V4(base) = prefix.addr() else {
        unreachable!("v4 half")
    };
    let host_bits = 32 - u32::from(prefix.len());
    let host = if host_bits == 0 {
        0
    } else {
        rng.gen::<u32>() & (u32::MAX >> (32 - host_bits))
    };
    Ipv4Addr::from(u32::from(base) | host)
}
