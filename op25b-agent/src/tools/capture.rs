//! Reads Ethernet frames from pcap and pcapng captures (tcpdump, tshark,
//! scapy, dumpcap), one at a time so a large capture never sits in memory.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
    DataLink, PcapError,
};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a pcap or pcapng capture (magic {magic:02x?})", path.display())]
    UnknownFormat { path: PathBuf, magic: [u8; 4] },
    #[error("{}: frame {frame}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        frame: u64,
        #[source]
        source: PcapError,
    },
    #[error("{}: frame {frame}: link type {link:?} is not Ethernet; capture on the subscriber-facing interface itself (tcpdump -i eth1, not -i any)", path.display())]
    NotEthernet {
        path: PathBuf,
        frame: u64,
        link: DataLink,
    },
}

/// One captured frame.
pub struct CapturedFrame {
    /// 1-based position among the capture's packets.
    pub number: u64,
    pub data: Vec<u8>,
    /// The frame's length on the wire (more than `data.len()` when the
    /// capture's snap length cut it).
    pub original_len: u32,
}

/// The reader after its magic was read, with the magic put back in front.
type Rewound<R> = std::io::Chain<std::io::Cursor<[u8; 4]>, R>;

enum Format<R: Read> {
    Pcap(PcapReader<Rewound<R>>),
    PcapNg(PcapNgReader<Rewound<R>>),
}

/// Streams the Ethernet frames of a capture file.
pub struct Capture<R: Read = BufReader<File>> {
    path: PathBuf,
    format: Format<R>,
    count: u64,
}

impl Capture {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let open_err = |source| CaptureError::Open {
            path: path.to_owned(),
            source,
        };
        let reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(open_err)?);
        Capture::from_reader(path, reader)
    }
}

impl<R: Read> Capture<R> {
    /// Reads a capture from `reader`; `path` names it in errors.
    pub fn from_reader(path: &Path, mut reader: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        reader
            .read_exact(&mut magic)
            .map_err(|source| CaptureError::Open {
                path: path.to_owned(),
                source,
            })?;
        let reader = std::io::Cursor::new(magic).chain(reader);
        let corrupt = |source| CaptureError::Corrupt {
            path: path.to_owned(),
            frame: 0,
            source,
        };
        let format = match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => Format::PcapNg(PcapNgReader::new(reader).map_err(corrupt)?),
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => Format::Pcap(PcapReader::new(reader).map_err(corrupt)?),
            _ => {
                return Err(CaptureError::UnknownFormat {
                    path: path.to_owned(),
                    magic,
                })
            }
        };
        Ok(Self {
            path: path.to_owned(),
            format,
            count: 0,
        })
    }

    fn corrupt(&self, source: PcapError) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            frame: self.count + 1,
            source,
        }
    }

    fn check_link(&self, link: DataLink) -> Result<(), CaptureError> {
        if link == DataLink::ETHERNET {
            Ok(())
        } else {
            Err(CaptureError::NotEthernet {
                path: self.path.clone(),
                frame: self.count,
                link,
            })
        }
    }

    /// The next frame, `None` at the end of the capture.
    pub fn next_frame(&mut self) -> Option<Result<CapturedFrame, CaptureError>> {
        let (data, original_len) = match &mut self.format {
            Format::Pcap(reader) => {
                let link = reader.header().datalink;
                let packet = match reader.next_packet()? {
                    Ok(p) => (p.data.into_owned(), p.orig_len),
                    Err(e) => return Some(Err(self.corrupt(e))),
                };
                self.count += 1;
                if let Err(e) = self.check_link(link) {
                    return Some(Err(e));
                }
                packet
            }
            Format::PcapNg(reader) => loop {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(self.corrupt(e))),
                };
                // Copy out first: the block borrows the reader.
                let (interface, packet) = match block {
                    Block::EnhancedPacket(epb) => (
                        epb.interface_id as usize,
                        (epb.data.into_owned(), epb.original_len),
                    ),
                    Block::SimplePacket(spb) => (0, (spb.data.into_owned(), spb.original_len)),
                    Block::Packet(pb) => (
                        usize::from(pb.interface_id),
                        (pb.data.into_owned(), pb.original_len),
                    ),
                    _ => continue,
                };
                let link = reader.interfaces().get(interface).map(|i| i.linktype);
                self.count += 1;
                let link = link.unwrap_or(DataLink::Unknown(u32::MAX));
                if let Err(e) = self.check_link(link) {
                    return Some(Err(e));
                }
                break packet;
            },
        };
        Some(Ok(CapturedFrame {
            number: self.count,
            data,
            original_len,
        }))
    }
}
